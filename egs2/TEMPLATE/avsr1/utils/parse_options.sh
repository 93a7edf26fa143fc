#!/usr/bin/env bash
# Sourced by a script after it has set its defaults: turns "--name value" and
# "--name=value" arguments into assignments of the existing shell variable
# "name" (dashes read as underscores), stops at the first non-option and
# shifts the consumed arguments away. An option with no such variable is an
# error, so a typo never passes silently. "--help" prints $help_message.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-}"
            exit 0 ;;
        --*=*)
            _name=${1%%=*}; _value=${1#*=}; _n=1 ;;
        --*)
            if [ $# -lt 2 ]; then
                echo "$0: option $1 needs a value" >&2; exit 1
            fi
            _name=$1; _value=$2; _n=2 ;;
        *)
            break ;;
    esac
    _name=${_name#--}
    _name=${_name//-/_}
    if ! declare -p "${_name}" >/dev/null 2>&1; then
        echo "$0: unknown option --${_name}" >&2; exit 1
    fi
    printf -v "${_name}" '%s' "${_value}"
    shift ${_n}
done
unset _name _value _n

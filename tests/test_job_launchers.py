"""The job launchers of the recipes: stage 11 on several nodes (avsr.sh ->
utils/slurm.sh -> sbatch -> srun, with a stand-in sbatch that records what
slurm would be asked to run), and GPU jobs on one machine (utils/run.sh)."""

import os
import subprocess

from conftest import SYNTHGRID_RECIPE as RECIPE, link_recipe

FAKE_SBATCH = """#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_SLURM/sbatch.args"
"""


def stage_11(tmp_path, backend, *options):
    recipe = link_recipe(tmp_path / "recipe")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    env = {**os.environ, "cmd_backend": backend, "FAKE_SLURM": str(tmp_path),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        ["./avsr.sh", "--stage", "11", "--stop_stage", "11", "--train_set", "train",
         "--valid_set", "dev", "--test_sets", "test", "--train_config", "conf/train_avsr_mtsk.yaml",
         *options],
        cwd=recipe, env=env, capture_output=True, text=True,
    )


def submitted(tmp_path):
    """sbatch's options and the command it was to run."""
    lines = (tmp_path / "sbatch.args").read_text().splitlines()
    wrap = lines.index("--wrap")
    return lines[:wrap], lines[wrap + 1].split()


def test_several_nodes_run_espnet_distributed_training_through_srun(tmp_path):
    proc = stage_11(tmp_path, "slurm", "--num_nodes", "2", "--ngpu", "8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    options, command = submitted(tmp_path)
    assert {"--nodes=2", "--ntasks-per-node=1", "--gres=gpu:8"} <= set(options)
    assert command[:5] == ["srun", "--export=ALL", "python3", "-m", "espnet_mtsk.bin.avsr_train"]
    flags = dict(zip(command, command[1:]))
    assert flags["--ngpu"] == "8"
    assert flags["--multiprocessing_distributed"] == "true"
    assert flags["--dist_launcher"] == "slurm"
    # A file every node sees, new for each run.
    exp = tmp_path / "recipe" / "exp" / "asr_train_avsr_mtsk"
    assert flags["--dist_init_method"].startswith(f"file://{exp}/.dist_init_")


def test_one_node_runs_without_srun(tmp_path):
    proc = stage_11(tmp_path, "slurm", "--ngpu", "8")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    options, command = submitted(tmp_path)
    assert "--gres=gpu:8" in options and not any(o.startswith("--nodes") for o in options)
    assert command[:5] == ["python3", "-m", "espnet_mtsk.bin.avsr_train", "--ngpu", "8"]
    assert "--dist_launcher" not in command


def test_cpu_ranks_run_espnet_distributed_training_through_torchrun(tmp_path):
    proc = stage_11(tmp_path, "slurm", "--num_cpu_ranks", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, command = submitted(tmp_path)
    threads = max(len(os.sched_getaffinity(0)) // 2, 1)
    assert command[:10] == [
        "env", f"OMP_NUM_THREADS={threads}", "python3", "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", "2", "-m", "espnet_mtsk.bin.avsr_train",
    ]
    flags = dict(zip(command, command[1:]))
    assert flags["--ngpu"] == "0" and flags["--dist_backend"] == "gloo"
    assert "--multiprocessing_distributed" not in flags


def test_cpu_ranks_are_for_cpu_training(tmp_path):
    proc = stage_11(tmp_path, "slurm", "--num_cpu_ranks", "2", "--ngpu", "1")
    assert proc.returncode != 0
    assert "--num_cpu_ranks is for CPU training on one machine" in proc.stderr


def test_several_nodes_need_the_slurm_backend(tmp_path):
    proc = stage_11(tmp_path, "local", "--num_nodes", "2", "--ngpu", "8")
    assert proc.returncode != 0
    assert "--num_nodes 2 needs cmd_backend=slurm" in proc.stderr


def test_local_gpu_jobs_take_the_gpus_in_turn(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/usr/bin/env bash\nprintf '0\\n1\\n'\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    run = RECIPE / "utils" / "run.sh"
    log = tmp_path / "log" / "decode.JOB.log"
    for gpu, expected in (("1", ["0", "1", "0"]), ("0", ["", "", ""])):
        proc = subprocess.run([str(run), "--gpu", gpu, "JOB=1:3", str(log), "bash", "-c",
                               "echo gpu=${CUDA_VISIBLE_DEVICES:-}"], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        seen = [next(line for line in (tmp_path / "log" / f"decode.{i}.log").read_text().splitlines()
                     if line.startswith("gpu="))[4:] for i in (1, 2, 3)]
        assert seen == expected, gpu

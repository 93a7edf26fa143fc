"""ESPnet2 tasks of the plugin."""

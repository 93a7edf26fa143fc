"""Recipe tooling shared by the recipes (the ESPnet ``local/`` convention):
not imported by the ``espnet_mtsk`` library."""

"""Turning the differ's verdict into a livepatch module: extract the changed code into an object
(extract.py), link it with a generated klp_patch (link.py), then write the klp relocations
(klp.py)."""

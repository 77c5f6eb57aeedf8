"""ELF relocatable objects as plain data: read with pyelftools (reader.py), written by our own
serializer (writer.py), so the differ and the module builder never touch pyelftools directly."""

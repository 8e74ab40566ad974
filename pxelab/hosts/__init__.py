"""The inventory of machines: host files and their install state."""

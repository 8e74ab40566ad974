"""What a machine boots: iPXE scripts, GRUB configs and install data, and `explain`."""

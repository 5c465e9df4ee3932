"""Members: the shop's customers enrolled in the program, addressed by the shop's own id."""

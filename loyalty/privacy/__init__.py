"""What the program holds about a member: exporting it all, and erasing the personal part."""

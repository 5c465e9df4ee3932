"""The rewards catalog: what members spend points on."""

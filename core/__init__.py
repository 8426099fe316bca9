"""What every layer shares (the bottom of the import graph): the one-line user error and path handling."""

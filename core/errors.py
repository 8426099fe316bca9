"""The one exception type for mistakes a user can fix: launchers print it as one line and exit 2."""


class UserError(Exception):
  """Bad input (config, data, checkpoint, flags). The message must name the fix."""

"""The default job: the seed's MLP on scikit-learn's bundled digits."""
from flaxforge.launch.configs import mlp_digits


def get_config():
  return mlp_digits.get_config()

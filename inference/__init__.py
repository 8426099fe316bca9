"""What a trained run produces: predictions (`predict`), text (`sampling`) and token attributions (`explain`),
from raw inputs read and encoded one way for every entry point (`inputs`). Above the engine (trainer/), below
serving/ and launch/."""

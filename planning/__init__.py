"""Planning a run before paying for it: the train step `flaxforge train` would run, compiled on this machine
for a TPU slice or GPU node (compile-only devices: no accelerator, no weights), its memory per chip against
the chip's, and a roofline of its throughput. `flaxforge plan` (launch/plan.py) is the command.

targets.py: the chips and target names; abstract.py: the run, built abstractly from the trainer's own
functions; compile.py: the compile and the compiler's verdict; hlo.py: collectives in the compiled HLO;
estimate.py: memory shares, FLOPs and the roofline; plan.py: one plan and its verdict; search.py: --search;
report.py: the terminal table.
"""

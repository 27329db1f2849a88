"""The operator's control plane: one command grammar, its dispatcher, the runtime socket
and its client (`lbconsole ctl`), and the algorithm comparison (`compare`)."""

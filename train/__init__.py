"""vitsrt.train: the synthesizer definition, checkpoint I/O and (later) the training loop. Needs torch."""

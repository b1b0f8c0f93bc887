"""vitsrt.train: the synthesizer definition, checkpoint I/O, data preparation and the training loop. Needs torch."""

"""vitsrt.export"""

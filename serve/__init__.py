"""vitsrt.serve"""

"""vitsrt.benchmarks"""

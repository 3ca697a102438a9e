"""What methods and metrics share, written once: scores, argument checks, fills.

Private to seewhy: nothing here is public API, and nothing here imports a
framework.
"""

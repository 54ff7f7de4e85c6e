"""Peer codes run on exactly our Hamiltonians and parameters (optional extra ``peers``)."""

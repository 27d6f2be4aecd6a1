"""gspo.cli"""

"""gspo.config"""

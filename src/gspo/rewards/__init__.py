"""gspo.rewards"""

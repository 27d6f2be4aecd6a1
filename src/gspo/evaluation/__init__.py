"""gspo.evaluation"""

"""gspo.trainer"""

"""gspo.models"""

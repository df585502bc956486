"""gombnet.inference"""

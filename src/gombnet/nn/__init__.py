"""gombnet.nn"""

"""gombnet.analysis"""

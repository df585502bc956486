"""gombnet.simulation"""

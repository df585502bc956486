"""gombnet.report"""

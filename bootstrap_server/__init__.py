"""bootstrap_server"""

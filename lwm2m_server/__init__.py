"""lwm2m_server"""

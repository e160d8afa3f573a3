"""engines/case"""

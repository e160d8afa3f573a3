"""engines/fake"""

"""compclap.models"""

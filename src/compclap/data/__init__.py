"""compclap.data"""

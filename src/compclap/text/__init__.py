"""compclap.text"""

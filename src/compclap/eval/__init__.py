"""compclap.eval"""

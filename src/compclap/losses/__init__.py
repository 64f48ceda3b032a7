"""compclap.losses"""

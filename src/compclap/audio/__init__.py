"""compclap.audio"""

"""Networked receivers over MQTT: Theengs Gateway / OpenMQTTGateway and ESPresense nodes."""

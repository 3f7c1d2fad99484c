"""What runs inside a job instance: the container contract and the instance agent.

Imports nothing from api/ or store/: the agent runs detached from the server, possibly on another
machine, and talks to the platform only through its job folder and the object store.
"""

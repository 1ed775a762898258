// placeholder: the chat widget is being written

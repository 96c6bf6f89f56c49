"""exchnode: government data-sharing exchange between front-end nodes and hubs."""

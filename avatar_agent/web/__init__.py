"""``avatar-agent serve``: the avatar in a browser over WebRTC (extra ``serve``)."""

"""DPO report capability: one self-contained HTML file on rooms, retention proof and decisions."""

//! Adapters for the HTTP APIs of NeuronEX, Neuron, eKuiper and NanoMQ (being written).

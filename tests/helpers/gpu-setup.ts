// Silences a harmless Vulkan loader warning about a missing runtime dir (webgpu-testing.md).
process.env['XDG_RUNTIME_DIR'] ??= '/tmp';

#pragma once
#include <vulkan/vulkan.h>

// Function-like macros (VK_MAKE_API_VERSION, VK_API_VERSION_1_x) do not import into Swift.
static const uint32_t SHARD_VK_API_VERSION_1_2 = VK_API_VERSION_1_2;
static const uint32_t SHARD_VK_API_VERSION_1_1 = VK_API_VERSION_1_1;

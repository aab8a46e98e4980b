// Entry points of libtrtalign_plugins_dynamic.so, the library for IPluginRegistry::loadLibrary
// (Python: trt.get_plugin_registry().load_library(path); trtexec --dynamicPlugins=...).
//
// loadLibrary dlopens the library, then registers the creators returned by getCreators() (IPluginV3 creators,
// TensorRT >= 10) or getPluginCreators() (IPluginV2 creators, TensorRT 8.6), and fails when one is already
// registered. So this library is compiled with TRTALIGN_NO_PLUGIN_REGISTRATION (no REGISTER_TENSORRT_PLUGIN static
// initialisers): libtrtalign_plugins.so registers itself when loaded (ctypes.CDLL, trtexec --staticPlugins / --plugins),
// this one is registered by whoever loads it. Building both from the same sources keeps them identical otherwise.

#include <NvInferRuntime.h>

#include "rotated_nms_plugin_v2.h"
#include "rotated_nms_plugin_v3.h"

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 6)
#error "IPluginRegistry::loadLibrary needs TensorRT >= 8.6; on 8.5 load libtrtalign_plugins.so (static registration)"
#endif
#ifndef TRTALIGN_NO_PLUGIN_REGISTRATION
#error "rotated_nms_plugin_library.cpp belongs to the loadLibrary target, built with TRTALIGN_NO_PLUGIN_REGISTRATION"
#endif

#define TRTALIGN_EXPORT extern "C" __attribute__((visibility("default")))

// TensorRT hands the library a way to find its logger; our plugins report errors through return codes and the
// TensorRT-side error recorder, so there is nothing to keep.
TRTALIGN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* /*finder*/) {}

// loadLibrary looks up getCreators (IPluginV3 creators) on 10.x/11.x and getPluginCreators (IPluginV2) on 8.6.
#if NV_TENSORRT_MAJOR >= 10
#define TRTALIGN_CREATORS_ENTRY getCreators
using CreatorInterface = nvinfer1::IPluginCreatorInterface;
using RotatedNmsCreator = trtalign::RotatedNmsPluginCreatorV3;
#else
#define TRTALIGN_CREATORS_ENTRY getPluginCreators
using CreatorInterface = nvinfer1::IPluginCreator;
using RotatedNmsCreator = trtalign::RotatedNmsPluginCreatorV2;
#endif

TRTALIGN_EXPORT CreatorInterface* const* TRTALIGN_CREATORS_ENTRY(int32_t& nbCreators)
{
    static RotatedNmsCreator creator;
    static CreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

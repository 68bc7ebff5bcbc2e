# FERRY_CUDA=AUTO builds kernels/ when nvcc is found; ON requires it; OFF never builds it.
#
# With CUDA, kernels/ splits in two:
#   kernels/*.cu   -> ferry_kernels (static): device code and its host launchers. It depends only on the
#                     headers under include/ and on the CUDA toolkit (cudart, cuBLAS), never on ferry_core.
#   kernels/*.cpp  -> FERRY_CUDA_HOST_SOURCES, compiled into ferry_core (top-level CMakeLists.txt): the
#                     CUDA Device, its LayerOps and the op test API, host C++ that calls the CUDA runtime
#                     and uses the runtime's own types (Device, planner, ...).
set(FERRY_WITH_CUDA OFF)
set(FERRY_CUDA_HOST_SOURCES "")
if(NOT FERRY_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
    set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
  endif()
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    set(FERRY_WITH_CUDA ON)
  elseif(FERRY_CUDA STREQUAL "ON")
    message(FATAL_ERROR "FERRY_CUDA=ON but no CUDA compiler was found; install the CUDA toolkit or use -DFERRY_CUDA=OFF")
  endif()
endif()

if(FERRY_WITH_CUDA)
  # Never 'native': there may be no GPU on the build machine. sm_75 is the oldest CUDA 13 supports.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 75 80 86 89 90)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
  file(GLOB FERRY_CUDA_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
  file(GLOB FERRY_CUDA_HOST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cpp)
  add_library(ferry_kernels STATIC ${FERRY_CUDA_SOURCES})
  target_include_directories(ferry_kernels PUBLIC ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR})
  target_link_libraries(ferry_kernels PUBLIC CUDA::cudart CUDA::cublas)
  # Warnings in the host half of the .cu files too; the device half is checked by nvcc itself.
  target_compile_options(ferry_kernels PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter>
    $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${FERRY_WERROR}>>:-Werror=all-warnings>)
  set_target_properties(ferry_kernels PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
  message(STATUS "ferry: CUDA kernels ON (archs ${CMAKE_CUDA_ARCHITECTURES})")
else()
  message(STATUS "ferry: CUDA kernels OFF")
endif()

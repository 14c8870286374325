# CUDA detection for KVMESH_CUDA=ON|OFF|AUTO: finds nvcc (PATH, $CUDACXX, $CUDA_HOME, /usr/local/cuda),
# enables the CUDA language for sm_90 machine code plus compute_80 PTX, and finds cuBLAS(Lt) and
# NCCL. Sets KVMESH_HAVE_CUDA and KVMESH_HAVE_NCCL.
set(KVMESH_HAVE_CUDA OFF)
set(KVMESH_HAVE_NCCL OFF)
string(TOUPPER "${KVMESH_CUDA}" kvmesh_cuda_mode)
if(NOT kvmesh_cuda_mode MATCHES "^(ON|OFF|AUTO)$")
  message(FATAL_ERROR "KVMESH_CUDA must be ON, OFF or AUTO (got '${KVMESH_CUDA}')")
endif()

if(NOT kvmesh_cuda_mode STREQUAL "OFF")
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(KVMESH_NVCC nvcc HINTS ENV CUDA_HOME ENV CUDA_PATH PATH_SUFFIXES bin
                 PATHS /usr/local/cuda/bin)
    if(KVMESH_NVCC)
      set(ENV{CUDACXX} "${KVMESH_NVCC}")
    endif()
  endif()
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      # Hopper machine code, plus PTX the driver can compile for any newer GPU (Ampere and up).
      set(CMAKE_CUDA_ARCHITECTURES "90-real;80-virtual")
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(KVMESH_HAVE_CUDA ON)
    find_path(KVMESH_NCCL_INCLUDE_DIR nccl.h
              HINTS ${CUDAToolkit_INCLUDE_DIRS} ENV NCCL_HOME PATH_SUFFIXES include)
    find_library(KVMESH_NCCL_LIBRARY nccl
                 HINTS ${CUDAToolkit_LIBRARY_DIR} ENV NCCL_HOME PATH_SUFFIXES lib lib64)
    if(KVMESH_NCCL_INCLUDE_DIR AND KVMESH_NCCL_LIBRARY)
      set(KVMESH_HAVE_NCCL ON)
      add_library(kvmesh_nccl INTERFACE IMPORTED)
      target_include_directories(kvmesh_nccl INTERFACE ${KVMESH_NCCL_INCLUDE_DIR})
      target_link_libraries(kvmesh_nccl INTERFACE ${KVMESH_NCCL_LIBRARY})
    endif()
    message(STATUS "kvmesh CUDA backend: ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION} at ${CMAKE_CUDA_COMPILER}, "
                   "architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL ${KVMESH_HAVE_NCCL})")
  elseif(kvmesh_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "KVMESH_CUDA=ON but no working nvcc was found: put nvcc on PATH, set CUDACXX, "
                        "or configure with -DKVMESH_CUDA=AUTO|OFF")
  else()
    message(STATUS "kvmesh CUDA backend: OFF (no nvcc found)")
  endif()
else()
  message(STATUS "kvmesh CUDA backend: OFF (KVMESH_CUDA=OFF)")
endif()
